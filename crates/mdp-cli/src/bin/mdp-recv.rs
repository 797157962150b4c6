//! mdp-recv: see `mdp-recv --help` and README.md.

use clap::Parser;

fn main() {
    let args = mdp_cli::recv::Args::parse();
    mdp_cli::main("mdp-recv", &args.out, || mdp_cli::recv::run(&args));
}
