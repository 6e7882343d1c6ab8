"""Worker transports: thin adapters from a network protocol to the WorkerGateway."""
