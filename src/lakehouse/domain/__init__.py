"""Pure domain: state machines, events, retry policy, roles. No I/O; time and ids are passed in."""
