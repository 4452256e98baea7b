"""What every pipeline uses: errors, atomic outputs and run records, image and mesh io, devices,
metrics (with their definitions), the Lightning training engine and task registry, and the demo.

Entry points: `engine.fit`, `tasks.load_task`, `demo.STEPS`; file formats are in the README's
"Files" section.
"""
