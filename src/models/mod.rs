pub mod spade;
