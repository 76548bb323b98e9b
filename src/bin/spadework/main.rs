//! The `spadework` command line: render, txt2img, embed, convert, repack, adapters, bench, paint; one file per
//! subcommand.
mod bench;
mod convert;
mod device_args;
mod embed;
#[cfg(feature = "paint")]
mod paint;
mod render;
mod txt2img;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "spadework",
    version,
    about = "Semantic image synthesis (SPADE/GauGAN) on WGSL kernels and a fast CPU backend"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Turn a segmentation map into an image.
    Render(render::RenderArgs),
    /// Generate an image from a prompt with a Stable Diffusion pipeline folder (diffusers layout).
    Txt2img(txt2img::Txt2ImgArgs),
    /// Sentence embeddings from the built-in MiniLM text encoder (or a sentence-transformers
    /// folder).
    Embed(embed::EmbedArgs),
    /// Convert an NVlabs generator checkpoint (.pth) into a self-describing safetensors file.
    Convert(convert::ConvertArgs),
    /// List the GPU adapters wgpu finds.
    Adapters,
    /// Rewrite a model file with smaller weight storage (f16 or int8 with per-channel scales).
    Repack(convert::RepackArgs),
    /// Benchmark per-op and end-to-end workloads on every adapter and the CPU backend.
    Bench(bench::BenchArgs),
    /// Paint a segmentation map and watch it become an image (a window).
    #[cfg(feature = "paint")]
    Paint(paint::PaintArgs),
}

fn main() {
    spadework::backend::cpu::keep_freed_memory();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Render(a) => render::render(a),
        Cmd::Txt2img(a) => txt2img::txt2img(a),
        Cmd::Embed(a) => embed::embed(a),
        Cmd::Convert(a) => convert::convert(a),
        Cmd::Adapters => bench::adapters(),
        Cmd::Repack(a) => convert::repack(a),
        Cmd::Bench(a) => bench::bench(a),
        #[cfg(feature = "paint")]
        Cmd::Paint(a) => paint::paint(a),
    };
    if let Err(e) = r {
        spadework::note!("error: {e:#}");
        std::process::exit(1);
    }
}
