fn main() {
    hookrun_core::entry::exit(hookrun_libvirt::main_impl());
}
