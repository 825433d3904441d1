// GuidonSystemd: to be written.
