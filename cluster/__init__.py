"""Client library, raftctl and the local cluster launcher. Talks to members over HTTP only."""
