"""Pure domain logic: records, the score formula, the output filter's rules, the story buffer. Imports only config."""
