"""The Gradio app's logic. ``app.py`` lays the page out and wires it to a :class:`~internet.app.studio.Studio`."""
