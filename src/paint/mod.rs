//! `spadework paint`: a GauGAN-style painter. The editing model ([`canvas`], [`files`],
//! [`autosave`]) and the render worker ([`worker`]) are plain Rust and unit-tested without a
//! window; [`app`] is the egui/eframe window on top (feature `paint`), and [`replay`] is the script
//! of input events that drives it for the end-to-end test, played by `replay_driver`.
pub mod autosave;
pub mod canvas;
pub mod files;
pub mod worker;

#[cfg(feature = "paint")]
pub mod app;
#[cfg(feature = "paint")]
pub mod replay;
#[cfg(feature = "paint")]
mod replay_driver;

pub use canvas::{Canvas, Editor, Tool};
pub use files::Palette;
