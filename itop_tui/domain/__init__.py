"""Pure logic and data: no I/O, no textual, no asyncssh, no tinydb."""
