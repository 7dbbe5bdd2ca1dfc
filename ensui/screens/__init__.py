"""Textual screens of the app. They compose widgets, bind keys and post messages; data
comes from `ensui.screens.data` in thread workers, never from SQL or models on the UI
thread."""
