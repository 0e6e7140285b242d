"""One module per phase type / engine. Each handler takes a PhaseContext and returns an output manifest."""
