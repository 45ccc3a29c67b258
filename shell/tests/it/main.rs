//! Integration tests of the shell core, driven with raw terminal bytes.

mod editor_model;
mod keys;
mod props;
mod reference;
mod screen;
mod scrollback;
mod util;
mod vt;
