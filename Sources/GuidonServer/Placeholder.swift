// GuidonServer: to be written.
