"""Benchmarks that print actlab's figures beside its peers', measured in the same run (`make bench`)."""
