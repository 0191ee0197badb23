//! Builds one plugin directory, until the gateway's CLI has a `plugin build` command:
//! `cargo run -p callgate-plugin-build --example build -- <plugin dir> <wit dir> <out dir>`.

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [dir, wit, out] = &args[..] else {
        eprintln!("usage: build <plugin dir> <wit dir> <out dir>");
        std::process::exit(2);
    };
    let start = Instant::now();
    match callgate_plugin_build::build_plugin(dir, wit, out) {
        Ok(path) => println!("{} in {:.2?}", path.display(), start.elapsed()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
