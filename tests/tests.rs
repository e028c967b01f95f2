//! Integration tests: the real `scout` binary on real files.
