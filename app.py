"""The SFD demo: `python app.py` (also the entry point of a Hugging Face Space, sdk: gradio).

Configured by environment variables (SFD_WEIGHTS, SFD_REVISION, SFD_MAX_SECONDS, SFD_MCP, ...;
see sfd/app/settings.py). Everything but the launch lives in sfd/app.
"""

try:  # On ZeroGPU Spaces `spaces` must be imported before torch touches CUDA.
    import spaces  # noqa: F401
except ImportError:
    pass

import logging

from sfd.app import AppSettings, create_demo, launch_options

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

settings = AppSettings.from_env()
demo = create_demo(settings)

if __name__ == "__main__":
    demo.launch(**launch_options(settings))
