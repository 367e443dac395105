"""The Gradio demo of sfd: `create_demo()` builds it from the SFD_* environment variables.

    from sfd.app import AppSettings, create_demo, launch_options
    settings = AppSettings.from_env()
    create_demo(settings).launch(**launch_options(settings))

Modules: `weights` (which weights run: SFD_WEIGHTS or the bundled default, with their
`sfd.semantics` calibration), `sliders` (slider ranges and order), `offsets` (the JSON form of
descriptor offsets), `handlers` (the event functions: pipeline calls and type conversion only),
`ui` (the page, one builder per tab), `gpu` (ZeroGPU wrapping).
"""

from .handlers import AppHandlers, EditSession
from .offsets import format_offsets, parse_offsets
from .settings import AppSettings
from .sliders import SliderLayout, SliderSpec, slider_layout
from .ui import build_demo, create_demo, launch_options, mcp_available
from .weights import BUNDLED_NAME, LoadedWeights, bundled_default, load_weights

__all__ = [
    "BUNDLED_NAME",
    "AppHandlers",
    "AppSettings",
    "EditSession",
    "LoadedWeights",
    "SliderLayout",
    "SliderSpec",
    "build_demo",
    "bundled_default",
    "create_demo",
    "format_offsets",
    "launch_options",
    "load_weights",
    "mcp_available",
    "parse_offsets",
    "slider_layout",
]
