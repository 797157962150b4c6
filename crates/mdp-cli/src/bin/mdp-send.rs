//! mdp-send: see `mdp-send --help` and README.md.

use clap::Parser;
use mdp_cli::send::{run, SendPlan};

fn main() {
    let args = mdp_cli::send::Args::parse();
    mdp_cli::main("mdp-send", &args.out, || run(SendPlan::from_args(&args)?));
}
