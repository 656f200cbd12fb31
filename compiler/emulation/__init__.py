"""Running artifacts for another CPU architecture here: a Debian sysroot driven by qemu-user."""
