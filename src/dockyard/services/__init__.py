"""The engine's services: containers, exec, images, events, system. They speak engine types."""
