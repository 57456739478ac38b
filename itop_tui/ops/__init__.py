"""Use cases that combine domain and services. Never imports textual."""
