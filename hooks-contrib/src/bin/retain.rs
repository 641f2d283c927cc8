//! `hookrun-retain`: see [`hookrun_contrib::retain_cli`].

fn main() {
    let code = hookrun_contrib::retain_cli::main_with(
        std::env::args_os().collect(),
        hookrun_contrib::calendar::Zone::Local,
    );
    std::process::exit(code);
}
