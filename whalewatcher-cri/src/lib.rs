//! The whalewatcher engine for CRI runtimes (containerd's CRI plugin, cri-o) through the CRI container events API.
//!
//! Implements [`whalewatcher_core::Engine`]; the watcher in
//! `whalewatcher-core` does the synchronization. This crate is a
//! placeholder until its engine lands.

pub use whalewatcher_core::Engine;
