"""From events to decisions: roll-ups (``rollup``), analysis (``analyze``) and actions (``actions``)."""
