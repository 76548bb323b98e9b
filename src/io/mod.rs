//! Files in and out: label/instance maps and the NVlabs input pipeline ([`labels`]), output and
//! style images ([`image`]), numpy arrays ([`npy`]).
pub mod image;
pub mod labels;
pub mod npy;
