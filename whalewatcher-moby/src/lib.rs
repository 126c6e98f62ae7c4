//! The whalewatcher engine for Docker (moby) and podman through the Docker-compatible API.
//!
//! Implements [`whalewatcher_core::Engine`]; the watcher in
//! `whalewatcher-core` does the synchronization. This crate is a
//! placeholder until its engine lands.

pub use whalewatcher_core::Engine;
