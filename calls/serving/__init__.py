"""Running a server process: startup checks, the serve command's loop and sweep, tunnels."""
