"""The development wing: the local stack (`make up`), its control plane and node, the demo, and
local stand-ins for model vendors. The services never import it (a test checks), and the images
leave it out."""
