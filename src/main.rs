//! The `scout` binary: parse arguments, run, map the outcome to an exit
//! code (0 success, 1 ran but found nothing, 2 at least one error).

fn main() {
    std::process::exit(scout::cli::main());
}
