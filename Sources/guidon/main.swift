print("guidon: not yet")
