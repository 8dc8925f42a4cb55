//! `strata`: the command-line face of Strata.
//!
//! - `strata formats` — every element type with its range and special values, and what each
//!   quantization mode does to a sample weight matrix.
//! - `strata formats NAME` — every code of one narrow format and the value it denotes.
//! - `strata tour` — the array-layer examples on the default device, with timings and pictures.
//! - `strata trace ...` — the flight recorder: collect a window, overview, aggregate by state,
//!   export to Perfetto, status and prune.

mod formats;
mod tour;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata: a machine-learning compute stack for Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the element types and quantization modes (or every code of one format).
    Formats(formats::Args),
    /// Run the examples (Mandelbrot, curve fitting) on the default device, writing pictures.
    Tour(tour::Args),
    /// Look back at the flight recorder: collect, overview, aggregate, export, status, prune.
    Trace(trace::Args),
}

fn main() -> ExitCode {
    quiet_headless_vulkan();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Formats(args) => formats::run(&args),
        Command::Tour(args) => tour::run(&args),
        Command::Trace(args) => trace::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// On a machine without a desktop session (no `XDG_RUNTIME_DIR`: a server, a container, CI),
/// Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` asks Wayland for the display's GPU
/// while the device is chosen, and libwayland prints "error: XDG_RUNTIME_DIR is invalid or not
/// set in the environment." twice before the command has said anything. The layer only orders
/// the GPUs for a display, and Strata ranks the adapters itself, so it is switched off there
/// (`NODEVICE_SELECT=1`), unless the caller set that variable.
fn quiet_headless_vulkan() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() && std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: the first thing `main` does, before any thread is started, so no other thread
        // reads the environment meanwhile.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
