"""The method: the paper's networks and ``PerceptionNet`` (``models``), decoders, the loss,
a user's model with decoders on its layers (``attached``), and the configurations of a run
(``config``). Files are ``storage``'s, how results show ``display``'s."""
