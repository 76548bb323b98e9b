//! `spadework paint`: a GauGAN-style painter. The editing model ([`canvas`], [`files`],
//! [`autosave`]) and the render worker ([`worker`]) are plain Rust and unit-tested without a
//! window; [`app`] is the egui/eframe window on top (feature `paint`), and [`replay`] drives it
//! from a script of input events for the end-to-end test.
pub mod autosave;
pub mod canvas;
pub mod files;
pub mod worker;

#[cfg(feature = "paint")]
pub mod app;
#[cfg(feature = "paint")]
pub mod replay;

pub use canvas::{Canvas, Editor, Tool};
pub use files::Palette;
