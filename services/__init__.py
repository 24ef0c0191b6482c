"""What Airlock runs on the fleet next to vLLM."""
