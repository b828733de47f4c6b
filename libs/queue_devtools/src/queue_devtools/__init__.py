"""Development tooling: throwaway PostgreSQL clusters and the local `make run` stack."""
