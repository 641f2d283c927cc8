fn main() {
    std::process::exit(hookrun_contrib::not_built("hookrun-copy-encrypt-retain"));
}
