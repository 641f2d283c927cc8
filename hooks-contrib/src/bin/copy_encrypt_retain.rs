//! `hookrun-copy-encrypt-retain`: see [`hookrun_contrib::cer`].

fn main() {
    std::process::exit(hookrun_contrib::cer::main_with(
        std::env::args_os().collect(),
    ));
}
