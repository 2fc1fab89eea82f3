"""The published figures of the student report that malgan reproduces and compares against.

These are the report's own numbers, quoted for comparison; every malgan figure comes from
``exported/metrics.json``.
"""

from __future__ import annotations

REPORT_TITLE = "Student report: Keras DCGANs and a ResNet on the NIH malaria cells"
#: Share of generated cells the report's classifier assigned to the intended class.
REPORT_RECOVERY = {"Parasitized": 0.30, "Uninfected": 0.991}
#: The report's ResNet (stages 3,4,6; filters 64,128,256,512), held-out accuracy.
REPORT_RESNET_ACCURACY = 0.9489
#: The report's simple CNN, accuracy range over 30, 50 and 100 epochs of SGD.
REPORT_CNN_ACCURACY = (0.52, 0.55)
#: The report's DCGAN training: iterations per class and batch size.
REPORT_DCGAN_ITERATIONS = 15000
REPORT_DCGAN_BATCH = 32
