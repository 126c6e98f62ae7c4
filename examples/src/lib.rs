//! Runnable examples of whalewatcher, and the `whalewatch` CLI; each is a
//! binary under `src/bin`:
//!
//! - `portfolio`: the Go module's example: wait for the first
//!   synchronization, print each project and its containers with their
//!   PIDs, stop cleanly;
//! - `follow`: print each lifecycle event until Ctrl-C;
//! - `whalewatch`: the CLI (`whalewatch --help`).
