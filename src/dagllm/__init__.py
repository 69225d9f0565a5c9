"""dagllm."""
