//! Runnable examples of whalewatcher live in `examples/`; this library is
//! empty.
