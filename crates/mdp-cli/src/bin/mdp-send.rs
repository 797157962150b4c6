//! mdp-send: see `mdp-send --help` and README.md.

use clap::Parser;

fn main() {
    let args = mdp_cli::send::Args::parse();
    mdp_cli::main("mdp-send", &args.out, || mdp_cli::send::run(&args));
}
