// GuidonProtocol: to be written.
