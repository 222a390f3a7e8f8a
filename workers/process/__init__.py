"""What one worker process provides to its rewards: shared models and clients (resources), the event loop
that synchronous rewards hand coroutines to, the result cache, and the sandbox that runs model-written
programs."""
