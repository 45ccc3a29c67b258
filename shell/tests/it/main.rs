//! Integration tests of the shell core, driven with raw terminal bytes.

mod keys;
mod props;
mod screen;
mod util;
mod vt;
