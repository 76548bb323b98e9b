pub mod torch_pickle;
