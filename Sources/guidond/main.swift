print("guidond: not yet")
