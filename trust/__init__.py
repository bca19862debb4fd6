"""Trust: keys, certificates, message signatures, global configuration format, anchors."""
