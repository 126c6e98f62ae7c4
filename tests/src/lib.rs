//! Support for the integration tests against real engines: where the
//! engines are and how to make containers on them. Filled in by the test
//! rig.
