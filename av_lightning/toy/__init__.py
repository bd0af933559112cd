"""The toy world's tools: the analytic probe and the toy text-to-video backbone's training."""
