"""Media streams held by this process: the consumer, paced playback, the realtime link."""
